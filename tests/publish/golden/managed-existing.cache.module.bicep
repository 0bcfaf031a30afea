@description('The location for the resource(s) to be deployed.')
param location string = resourceGroup().location

param existingResourceName string

resource cache 'Microsoft.Cache/redisEnterprise@2025-07-01' existing = {
  name: existingResourceName
}

output connectionString string = '${cache.properties.hostName}:10000,ssl=true'

output name string = cache.name

output id string = cache.id

output hostName string = cache.properties.hostName
